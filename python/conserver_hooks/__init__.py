"""Drop-in replacements for vCon Server's no-op hook modules (`conserver/hook.py`,
`conserver/after_link_hook.py`), delegating to `vcon_otel.hooks`."""
