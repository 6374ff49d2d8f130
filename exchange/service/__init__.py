"""The durable service around the core: the sequencer, recovery, snapshots."""
