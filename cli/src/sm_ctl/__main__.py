"""``python -m sm_ctl``: how ``up`` starts its children with the same interpreter."""

from sm_ctl.main import app

app(prog_name="smctl")
