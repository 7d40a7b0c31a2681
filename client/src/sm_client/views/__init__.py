"""Thin views: one module per screen; they render view-model state and call its methods."""
