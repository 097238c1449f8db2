"""What PM knows of its PSPs' wire protocols (signatures, SBP links) and its own record of every attempt."""
