"""An intent as stored (`record`) and the ledger legs it makes (`legs`): the saga writes them, the
reconciler recomputes them to check the ledger."""
