"""The Informat reader: operations table, parameters, client, streaming parser, snapshots."""
