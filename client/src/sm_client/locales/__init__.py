"""The client's strings, one module per screen area (see ``sm_client.i18n``)."""
