"""Renderers for the parts beside the collector that give each carrier its own view.

Layout::

    collector/provision/
      vmauth.py    render-vmauth: vmauth's users, one per carrier (its owner label forced on every read) and one
                   for the zone authority (unfiltered), read API paths only; their passwords in files (0600)
      grafana.py   render-grafana: an organisation per carrier, its datasource through vmauth with its own
                   password, and the dashboards provisioned into it
      cli.py       the two subcommands, registered on the collector's command line

Each renderer is pure (inventory in, text out) apart from its ``write`` function.
"""
