"""Chat bots: a chat platform's transport (Twitch IRC today) in front of a question/answer service that
sends every question through the same pipeline as the gateway's calls.

    transport.py   what the service needs from a chat platform (a Protocol), and the message types
    ircline.py     IRC lines with IRCv3 tags: parsing and formatting, no I/O
    irc.py         an IRC client for Twitch chat: TLS, tags, PING/PONG, RECONNECT, backoff
    questions.py   the command, validation and normalisation of questions
    cooldown.py    one question per viewer per period
    answers.py     an answer fitted to the chat's character budget, and the lines that carry it
    standing.py    the bot's standing in the channel (USERSTATE badges) and the message limit it gives
    outbox.py      outgoing lines paced to Twitch's message limits, packed several to a line when scarce
    pacing.py      when each waiting answer will go out, and how many answers must share a line
    waits.py       each viewer's own predicted wait, told once and again only when clearly worse
    notices.py     apologies to many viewers gathered into few lines
    answerer.py    the call to Claude behind a one-method Protocol, errors sorted by kind
    service.py     the question/answer service: de-duplication, budgets, waits, fallbacks, draining
    metrics.py     Prometheus metrics in a registry of their own, answer-time quantiles
    health.py      healthy, degraded or unhealthy, and the /health and /metrics endpoints
    twitch.py      wiring for ``claudegate bot twitch``

Nothing here is imported by the gateway; the command imports it when it runs.
"""
