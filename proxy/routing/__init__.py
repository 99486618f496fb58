"""Routing: which upstream serves a request next, and what an upstream's answer meant.

`router` is the decision (candidates by priority, weighted choice, cooldowns) and knows no
HTTP; `settings` reads the config keys it is driven by. The attempt loop that asks it lives in
`proxy.relay.attempts`.
"""
