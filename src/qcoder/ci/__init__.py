"""CI commands: `qcoder review`, `qcoder gen-tests`, `qcoder ci regress`.

A layer beside the agent: they use the client, the agent's tools and the eval sandbox, and ground what the
model says in something executed (a line that exists, a test that fails, a mutant that dies).
"""
