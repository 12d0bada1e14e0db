package declare

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the JDS's Prometheus metrics (documented in docs/jds.md).
type Metrics struct {
	declarations     *prometheus.CounterVec
	missingRounds    prometheus.Counter
	missingTxs       prometheus.Counter
	missingBytes     prometheus.Counter
	checkSeconds     prometheus.Histogram
	proposalSeconds  prometheus.Histogram
	tokensAllocated  prometheus.Counter
	validations      *prometheus.CounterVec
	blocks           *prometheus.CounterVec
	connections      prometheus.Gauge
	connRefused      *prometheus.CounterVec
	connClosed       *prometheus.CounterVec
	validationSecond prometheus.Histogram
}

// NewMetrics registers the metrics on reg. core may be nil; when set, its
// live tokens and jobs are exported as gauges.
func NewMetrics(reg prometheus.Registerer, core *Core) *Metrics {
	m := &Metrics{
		declarations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jds_declarations_total",
			Help: "DeclareMiningJob answers by result (accepted, rejected) and reason (the error code; empty when accepted)."}, []string{"result", "reason"}),
		missingRounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "jds_missing_tx_rounds_total",
			Help: "ProvideMissingTransactions requests sent: declarations that named a transaction the mempool mirror did not hold."}),
		missingTxs: prometheus.NewCounter(prometheus.CounterOpts{Name: "jds_missing_txs_total",
			Help: "Transactions asked for with ProvideMissingTransactions."}),
		missingBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "jds_missing_tx_bytes_total",
			Help: "Bytes of transactions received in ProvideMissingTransactions.Success."}),
		checkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jds_declaration_check_seconds",
			Help:    "Time of the JDS's own checks of a declaration (token, coinbase, lookups, transactions, assembly), without the node's proposal check.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		proposalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jds_node_proposal_seconds",
			Help: "Time of the node's getblocktemplate proposal check of a declared block.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		tokensAllocated: prometheus.NewCounter(prometheus.CounterOpts{Name: "jds_tokens_allocated_total",
			Help: "Tokens handed out by AllocateMiningJobToken."}),
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jds_custom_job_validations_total",
			Help: "Pool API custom-job checks by result (ok, rejected) and reason (the verdict's code)."}, []string{"result", "reason"}),
		validationSecond: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jds_custom_job_validation_seconds",
			Help: "Time of one pool API custom-job check.", Buckets: prometheus.ExponentialBuckets(0.00001, 2, 16)}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jds_blocks_total",
			Help: "Blocks rebuilt and submitted, by path (push-solution, pool-api) and result (accepted, rejected, error)."}, []string{"via", "result"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "jds_connections",
			Help: "JDC connections past SetupConnection."}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jds_connections_refused_total",
			Help: "Connections refused, by reason (limit, per-ip-limit, setup)."}, []string{"reason"}),
		connClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jds_connections_closed_total",
			Help: "Connections closed by the JDS for a fault of the peer, by reason (malformed, unexpected-message, rate-limit, slow-peer)."}, []string{"reason"}),
	}
	reg.MustRegister(m.declarations, m.missingRounds, m.missingTxs, m.missingBytes, m.checkSeconds, m.proposalSeconds,
		m.tokensAllocated, m.validations, m.validationSecond, m.blocks, m.connections, m.connRefused, m.connClosed)
	if core != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jds_tokens_live", Help: "Allocated tokens not yet used or expired."},
				func() float64 { return float64(core.Stats().TokensLive) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jds_jobs_live", Help: "Declared jobs kept for the pool API and PushSolution."},
				func() float64 { return float64(core.Stats().JobsLive) }),
		)
	}
	return m
}

// newDiscardMetrics are metrics registered nowhere, for a Server without a
// registry.
func newDiscardMetrics() *Metrics { return NewMetrics(prometheus.NewRegistry(), nil) }
