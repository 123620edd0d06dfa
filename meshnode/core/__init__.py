"""The pure core: feed rules, policy, clocks, the node, replication, the channel, the Store."""
