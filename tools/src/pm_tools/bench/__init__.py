"""`pm bench`: every benchmark beside a baseline measured in the same run, and its report."""
