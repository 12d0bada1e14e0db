package daemon

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/jdc"
)

type metrics struct {
	upstreamState *prometheus.GaugeVec   // pair, pool, state
	active        *prometheus.GaugeVec   // source
	switches      *prometheus.CounterVec // from, to, reason
	templates     *prometheus.CounterVec // kind
	tipChanges    prometheus.Counter
	txData        *prometheus.CounterVec // result
	declarations  *prometheus.CounterVec // pair, result
	customJobs    *prometheus.CounterVec // pair, result
	shares        *prometheus.CounterVec // source, outcome, reason
	blocks        *prometheus.CounterVec // source
	submissions   *prometheus.CounterVec // path, result
	tipLatency    prometheus.Histogram
	tpConnected   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, pairs int) (*metrics, error) {
	const ns = "jdc"
	m := &metrics{
		upstreamState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "upstream_state",
			Help: "1 for the state each pool+JDS pair is in (connecting, declaring, healthy, failed, probing)."}, []string{"pair", "state"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "active_source",
			Help: "1 for the source the devices mine for: pair-N, solo or none."}, []string{"source"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_switches_total",
			Help: "Changes of the source the devices mine for, by reason."}, []string{"from", "to", "reason"}),
		templates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "templates_total",
			Help: "NewTemplate messages received from tp, by kind (future, current)."}, []string{"kind"}),
		tipChanges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "tip_changes_total",
			Help: "SetNewPrevHash messages received from tp."}),
		txData: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tx_data_requests_total",
			Help: "RequestTransactionData calls to tp, by result (ok, error)."}, []string{"result"}),
		declarations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "declarations_total",
			Help: "DeclareMiningJob requests, by pair and result (sent, ok, rejected, failed)."}, []string{"pair", "result"}),
		customJobs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "custom_jobs_total",
			Help: "SetCustomMiningJob requests, by pair and result (sent, accepted, rejected)."}, []string{"pair", "result"}),
		shares: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "shares_total",
			Help: "Device shares meeting the upstream target, by source and outcome (sent, buffered, accepted, rejected, dropped, block) with the pool's error code or drop reason."},
			[]string{"source", "outcome", "reason"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "blocks_found_total",
			Help: "Blocks found by the devices, by source."}, []string{"source"}),
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "block_submissions_total",
			Help: "Found blocks handed on, by path (disk, tp, jds, node) and result (ok, error, rejected)."}, []string{"path", "result"}),
		tipLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "new_tip_to_device_work_seconds",
			Help:    "From a SetNewPrevHash read from tp to the devices' new work handed to the device server.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1}}),
		tpConnected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "tp_connected",
			Help: "1 while the TDP connection to tp is up."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.upstreamState, m.active, m.switches, m.templates, m.tipChanges,
			m.txData, m.declarations, m.customJobs, m.shares, m.blocks, m.submissions, m.tipLatency, m.tpConnected} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for i := 0; i < pairs; i++ {
		for _, s := range jdc.StateNames {
			m.upstreamState.WithLabelValues(strconv.Itoa(i), s).Set(0)
		}
	}
	return m, nil
}

func (m *metrics) setStates(states []jdc.PairState, active int, pairs int) {
	for i, st := range states {
		for _, s := range jdc.StateNames {
			v := 0.0
			if s == st.State {
				v = 1
			}
			m.upstreamState.WithLabelValues(strconv.Itoa(i), s).Set(v)
		}
	}
	srcs := []int{jdc.Solo, jdc.None}
	for i := 0; i < pairs; i++ {
		srcs = append(srcs, i)
	}
	for _, s := range srcs {
		v := 0.0
		if s == active {
			v = 1
		}
		m.active.WithLabelValues(jdc.SourceName(s)).Set(v)
	}
}
