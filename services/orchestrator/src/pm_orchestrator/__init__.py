"""pm-orchestrator: the saga: takes intents through validation, authorization and settlement."""
