package tpserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// metrics are tp's Prometheus series (docs/tp.md lists them).
type metrics struct {
	clients         prometheus.Gauge
	readyClients    prometheus.Gauge
	groups          prometheus.Gauge
	cached          prometheus.Gauge
	tipHeight       prometheus.Gauge
	templateFees    prometheus.Gauge
	templateTxs     prometheus.Gauge
	nodeUp          prometheus.Gauge
	refused         *prometheus.CounterVec
	slowDropped     prometheus.Counter
	messagesSent    *prometheus.CounterVec
	templatesSent   *prometheus.CounterVec
	feeUpdates      prometheus.Counter
	tipChanges      prometheus.Counter
	fastPaths       prometheus.Counter
	blocksFound     prometheus.Counter
	blocksSubmitted *prometheus.CounterVec
	gbtDuration     prometheus.Histogram
	tipLatency      *prometheus.HistogramVec
	nodeErrors      *prometheus.CounterVec
	tips            *prometheus.CounterVec
	zmqGaps         *prometheus.CounterVec
	mempoolNotices  prometheus.Counter

	// Children resolved once: the fan-out path runs per client.
	sentNT, sentNTFuture, sentSNPH prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		clients:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_clients", Help: "Connected TDP clients (handshake done)."}),
		readyClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_clients_ready", Help: "Clients that sent CoinbaseOutputConstraints and receive templates."}),
		groups:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_reservation_groups", Help: "Distinct coinbase reservations served (one template build each)."}),
		cached:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_templates_cached", Help: "Templates kept for RequestTransactionData and SubmitSolution."}),
		tipHeight:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_tip_height", Help: "Height of the tip templates build on."}),
		templateFees: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_template_fees_sats", Help: "Total fees of the latest node template."}),
		templateTxs:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_template_transactions", Help: "Transactions in the latest node template."}),
		nodeUp:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "tp_node_up", Help: "1 when the last getblocktemplate succeeded, 0 after a failure."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_clients_refused_total",
			Help: "Connections refused at accept, by reason (max-clients, max-clients-per-ip)."}, []string{"reason"}),
		slowDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tp_clients_dropped_slow_total", Help: "Clients dropped because their send queue was full."}),
		messagesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_messages_sent_total",
			Help: "Messages queued to clients, by message name."}, []string{"message"}),
		templatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_templates_sent_total",
			Help: "NewTemplate messages queued to clients, by future=true/false."}, []string{"future"}),
		feeUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "tp_fee_updates_total", Help: "Fee-improved templates issued (per reservation group)."}),
		tipChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "tp_tip_changes_total", Help: "New tips templates moved to."}),
		fastPaths:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tp_fast_path_total", Help: "New tips announced by SetNewPrevHash before the node's template."}),
		blocksFound: prometheus.NewCounter(prometheus.CounterOpts{Name: "tp_blocks_found_total",
			Help: "SubmitSolution messages that met the block target."}),
		blocksSubmitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_blocks_submitted_total",
			Help: "Found blocks submitted to the node, by result (accepted, duplicate, rejected, error, no-node)."}, []string{"result"}),
		gbtDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tp_getblocktemplate_duration_seconds",
			Help:    "Duration of getblocktemplate calls (failed ones included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		tipLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tp_new_tip_latency_seconds",
			Help:    "From a new-tip notice to SetNewPrevHash written to every client; path=fast (before the node's template) or node.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"path"}),
		nodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_node_errors_total",
			Help: "Failed template fetches by class (down, timeout, cookie, auth, initial-block-download, no-peers, warmup, busy, wrong-network, other)."}, []string{"class"}),
		tips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_tip_notices_total",
			Help: "New tips learned, by source (zmq, longpoll, poll)."}, []string{"source"}),
		zmqGaps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tp_zmq_gaps_total",
			Help: "ZMQ sequence gaps and reconnections (each triggers a resync), by topic."}, []string{"topic"}),
	}
	m.mempoolNotices = prometheus.NewCounter(prometheus.CounterOpts{Name: "tp_mempool_notices_total",
		Help: "Mempool changes the node announced over ZMQ sequence (A/R) and blocks disconnected."})
	m.sentNT = m.templatesSent.WithLabelValues("false")
	m.sentNTFuture = m.templatesSent.WithLabelValues("true")
	m.sentSNPH = m.messagesSent.WithLabelValues("SetNewPrevHash")
	m.messagesSent.WithLabelValues("NewTemplate")
	if reg != nil {
		reg.MustRegister(m.clients, m.readyClients, m.groups, m.cached, m.tipHeight, m.templateFees, m.templateTxs, m.nodeUp,
			m.refused, m.slowDropped, m.messagesSent, m.templatesSent, m.feeUpdates, m.tipChanges, m.fastPaths,
			m.blocksFound, m.blocksSubmitted, m.gbtDuration, m.tipLatency, m.nodeErrors, m.tips, m.zmqGaps, m.mempoolNotices)
	}
	return m
}

func (m *metrics) countSent(msg codec.Message) {
	switch msg := msg.(type) {
	case *messages.SetNewPrevHash:
		m.sentSNPH.Inc()
	case *messages.NewTemplate:
		m.messagesSent.WithLabelValues("NewTemplate").Inc()
		if msg.FutureTemplate {
			m.sentNTFuture.Inc()
		} else {
			m.sentNT.Inc()
		}
	default:
		m.messagesSent.WithLabelValues(msg.MessageName()).Inc()
	}
}
