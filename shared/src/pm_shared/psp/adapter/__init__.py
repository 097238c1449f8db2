"""What the PSP adapters share: their process (`service`), their common settings (`settings`), how a
call to the PSP ends without an answer and how it is asked again (`calls`), and what they do with
their record of an attempt (`results`). Each PSP's protocol stays in its adapter."""
