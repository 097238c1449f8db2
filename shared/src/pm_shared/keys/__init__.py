"""Service keys: their secrets encrypted at rest (`crypto`) and their rows in pm.service_key (`store`)."""
