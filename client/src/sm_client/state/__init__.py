"""View-models: they hold what screens show and call the API; no Flet controls."""
