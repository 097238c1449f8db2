"""pm-adapter-qp: SBP top-ups through the QP PSP."""
