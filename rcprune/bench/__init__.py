"""Every benchmark, the demo and the report card, in one place (``rcprune bench ...``, ``rcprune demo``)."""
