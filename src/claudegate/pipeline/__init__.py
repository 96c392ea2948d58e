"""The one pipeline every front door shares: tenant limits → admission → dispatch (retries, failover) →
relay (tapping usage) → accounting. See shared design: front doors only turn their input into a
``CallRequest`` and give the pipeline a ``ResponseSink`` to write the reply to."""
