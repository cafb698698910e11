#!/usr/bin/env bash
# cluster_partition.sh with 3 nodes: each round isolates one node (the
# leader, then a follower), then kill -9 of the leader and its restart.
CL_NODES=3 exec "$(dirname "$0")/cluster_partition.sh" "$@"
