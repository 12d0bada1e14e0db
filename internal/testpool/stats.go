package testpool

import (
	"fmt"
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
)

// Stats is a snapshot of the pool's counters (totals since New, except the
// gauges Connections and Channels).
type Stats struct {
	Connections int
	Channels    int
	// CustomJobsAccepted counts SetCustomMiningJob.Success sent, and
	// CustomJobsRejected SetCustomMiningJob.Error by error code.
	CustomJobsAccepted uint64
	CustomJobsRejected map[string]uint64
	SharesAccepted     uint64
	SharesRejected     map[string]uint64
	// BlocksFound counts block-solving shares; BlocksAccepted and
	// BlocksRejected what the JDS's node answered; BlocksRefused the
	// blocks the JDS could not rebuild (coinbase-only jobs, unknown
	// tokens); BlocksFailed the hand-overs that failed (JDS unreachable).
	BlocksFound, BlocksAccepted, BlocksRejected, BlocksRefused, BlocksFailed uint64
	// Blocks are the most recent block results, oldest first.
	Blocks []BlockRecord
	// Users holds the same counters per user_identity.
	Users map[string]UserStats
}

// UserStats is one user's share of Stats.
type UserStats struct {
	CustomJobsAccepted uint64
	CustomJobsRejected map[string]uint64
	SharesAccepted     uint64
	SharesRejected     map[string]uint64
	// DifficultySum is the sum of the difficulties of accepted shares.
	DifficultySum float64
	BlocksFound   uint64
}

// BlockRecord is one block-solving share and what became of it.
type BlockRecord struct {
	User   string
	Hash   string // display byte order
	Result declare.BlockResult
	Err    string // set when the hand-over failed
	// Refused: the JDS answered that it cannot rebuild the block (Err has
	// its code and details).
	Refused bool
}

const maxBlockRecords = 64

type statsState struct {
	s Stats
}

func newStatsState() statsState {
	return statsState{s: Stats{CustomJobsRejected: map[string]uint64{}, SharesRejected: map[string]uint64{},
		Users: map[string]UserStats{}}}
}

// user returns the entry of a user, creating it (bounded by MaxUsers).
func (st *statsState) user(name string) (string, UserStats) {
	if u, ok := st.s.Users[name]; ok {
		return name, u
	}
	if len(st.s.Users) >= MaxUsers {
		name = OtherUsers
		if u, ok := st.s.Users[name]; ok {
			return name, u
		}
	}
	return name, UserStats{CustomJobsRejected: map[string]uint64{}, SharesRejected: map[string]uint64{}}
}

// boundedInc counts code in m, folding new codes into "other" beyond 64.
func boundedInc(m map[string]uint64, code string) {
	if _, ok := m[code]; !ok && len(m) >= 64 {
		code = "other"
	}
	m[code]++
}

func (p *Pool) countCustomJob(user, code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, u := p.stats.user(user)
	if code == "" {
		p.stats.s.CustomJobsAccepted++
		u.CustomJobsAccepted++
		p.m.customJobs.WithLabelValues("accepted", "").Inc()
	} else {
		boundedInc(p.stats.s.CustomJobsRejected, code)
		boundedInc(u.CustomJobsRejected, code)
		p.m.customJobs.WithLabelValues("rejected", code).Inc()
	}
	p.stats.s.Users[name] = u
}

func (p *Pool) countShare(user, code string, difficulty float64, block bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, u := p.stats.user(user)
	if code == "" {
		p.stats.s.SharesAccepted++
		u.SharesAccepted++
		u.DifficultySum += difficulty
		p.m.shares.WithLabelValues("accepted", "").Inc()
	} else {
		boundedInc(p.stats.s.SharesRejected, code)
		boundedInc(u.SharesRejected, code)
		p.m.shares.WithLabelValues("rejected", code).Inc()
	}
	if block {
		p.stats.s.BlocksFound++
		u.BlocksFound++
		p.m.blocksFound.Inc()
	}
	p.stats.s.Users[name] = u
}

func (p *Pool) countBlock(rec BlockRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case rec.Refused:
		p.stats.s.BlocksRefused++
		p.m.blocksSubmitted.WithLabelValues("refused").Inc()
	case rec.Err != "":
		p.stats.s.BlocksFailed++
		p.m.blocksSubmitted.WithLabelValues("error").Inc()
	case rec.Result.Accepted:
		p.stats.s.BlocksAccepted++
		p.m.blocksSubmitted.WithLabelValues("accepted").Inc()
	default:
		p.stats.s.BlocksRejected++
		p.m.blocksSubmitted.WithLabelValues("rejected").Inc()
	}
	p.stats.s.Blocks = append(p.stats.s.Blocks, rec)
	if len(p.stats.s.Blocks) > maxBlockRecords {
		p.stats.s.Blocks = p.stats.s.Blocks[len(p.stats.s.Blocks)-maxBlockRecords:]
	}
}

func (p *Pool) channelsDelta(d int) {
	p.mu.Lock()
	p.stats.s.Channels += d
	p.mu.Unlock()
	p.m.channels.Add(float64(d))
}

// Stats returns a snapshot (deep copy) of the counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats.s
	s.Connections = len(p.conns)
	s.CustomJobsRejected = maps.Clone(s.CustomJobsRejected)
	s.SharesRejected = maps.Clone(s.SharesRejected)
	s.Blocks = append([]BlockRecord(nil), s.Blocks...)
	s.Users = make(map[string]UserStats, len(p.stats.s.Users))
	for k, u := range p.stats.s.Users {
		u.CustomJobsRejected = maps.Clone(u.CustomJobsRejected)
		u.SharesRejected = maps.Clone(u.SharesRejected)
		s.Users[k] = u
	}
	return s
}

// poolMetrics are the pool's Prometheus series (docs/demo.md lists them).
type poolMetrics struct {
	connections     prometheus.Gauge
	channels        prometheus.Gauge
	customJobs      *prometheus.CounterVec
	shares          *prometheus.CounterVec
	blocksFound     prometheus.Counter
	blocksSubmitted *prometheus.CounterVec
}

func newPoolMetrics(reg prometheus.Registerer) (*poolMetrics, error) {
	m := &poolMetrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sv2pool_connections",
			Help: "Open Mining Protocol connections."}),
		channels: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sv2pool_channels",
			Help: "Open extended channels."}),
		customJobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sv2pool_custom_jobs_total",
			Help: "SetCustomMiningJob answered, by result (accepted, rejected) and error code."}, []string{"result", "code"}),
		shares: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sv2pool_shares_total",
			Help: "Shares answered, by result (accepted, rejected) and error code."}, []string{"result", "code"}),
		blocksFound: prometheus.NewCounter(prometheus.CounterOpts{Name: "sv2pool_blocks_found_total",
			Help: "Shares that met the network target."}),
		blocksSubmitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sv2pool_blocks_submitted_total",
			Help: "Blocks handed to the JDS, by result (accepted, rejected by the node, refused: the JDS cannot rebuild it, error: unreachable)."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.channels, m.customJobs, m.shares, m.blocksFound, m.blocksSubmitted} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("testpool: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
