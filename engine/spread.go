package engine

import (
	"slices"

	"postroom/engine/config"
)

// spreadMin is the fewest messages a split-off connection carries: a
// connection is reused for several messages, and a short run is sent
// sooner on the connection it is part of than on a new one.
const spreadMin = 10

// spread splits claimed groups so that a backlog for one next hop goes out
// over several connections at once, up to the free delivery slots, each
// connection still carrying a run of at least spreadMin messages.
//
// Without it, everything one claim took for the smarthost (up to
// claimBatch recipients) went to a single worker that sent it message
// after message, waiting for each result to be on disk before the next,
// while the other slots stayed idle: a backlog drained at one connection's
// pace. Split, the workers' results share group commits (storage), so
// twenty connections cost about what one did on the disk.
//
// A destination with a connection limit of its own is left whole: the
// limiter counts one connection per group (limits.go).
func spread(s *config.Settings, groups []group, slots int) []group {
	if slots <= len(groups) {
		return groups
	}
	total := 0
	for _, g := range groups {
		total += len(byMessage(g.due))
	}
	perConn := max((total+slots-1)/slots, spreadMin)
	var out []group
	for _, g := range groups {
		msgs := byMessage(g.due)
		if len(msgs) <= perConn || (g.domain != "" && destinationLimit(s, g.domain).MaxConnections > 0) {
			out = append(out, g)
			continue
		}
		for part := range slices.Chunk(msgs, perConn) {
			out = append(out, group{domain: g.domain, due: slices.Concat(part...)})
		}
	}
	return out
}
