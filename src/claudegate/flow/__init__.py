"""Flow control: token buckets, limits and admission."""
