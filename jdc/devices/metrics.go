package devices

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics (docs/jdc-devices.md lists
// them). With no Registerer they are created but not registered.
type metrics struct {
	connections  prometheus.Gauge
	channels     *prometheus.GaugeVec // kind
	setupFailed  *prometheus.CounterVec
	dropped      *prometheus.CounterVec // reason
	opened       *prometheus.CounterVec // kind
	openFailed   *prometheus.CounterVec // code
	accepted     prometheus.Counter
	acceptedDiff prometheus.Counter
	rejected     *prometheus.CounterVec // code
	upstream     prometheus.Counter
	upstreamLost prometheus.Counter
	blocks       prometheus.Counter
	jobs         *prometheus.CounterVec // message
	jobsStd      prometheus.Counter
	jobsExt      prometheus.Counter
	prefixes     prometheus.Counter
	prevHashes   prometheus.Counter
	setTargets   prometheus.Counter
	tipLatency   prometheus.Histogram
	hashrate     *prometheus.GaugeVec // conn, channel, user
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "jdc", "devices"
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "connections", Help: "Device connections past SetupConnection."}),
		channels: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "channels", Help: "Open device channels by kind (standard, extended)."}, []string{"kind"}),
		setupFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "setup_refused_total", Help: "SetupConnection requests refused, by error code."}, []string{"code"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_dropped_total", Help: "Connections closed by the server, by reason."}, []string{"reason"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "channels_opened_total", Help: "Channels opened, by kind."}, []string{"kind"}),
		openFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "channel_open_refused_total", Help: "OpenMiningChannel requests refused, by error code."}, []string{"code"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shares_accepted_total", Help: "Shares accepted from devices."}),
		acceptedDiff: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shares_accepted_difficulty_total", Help: "Sum of the channel difficulty of accepted shares (work done)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shares_rejected_total", Help: "Shares rejected, by SubmitShares.Error code."}, []string{"code"}),
		upstream: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shares_upstream_total", Help: "Shares meeting the upstream or network target, handed to jdc."}),
		upstreamLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shares_upstream_dropped_total", Help: "Upstream shares dropped because jdc did not take them fast enough (never blocks)."}),
		blocks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "blocks_found_total", Help: "Shares meeting the network target."}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "jobs_sent_total", Help: "Job messages sent to devices, by message (a group message counts once)."}, []string{"message"}),
		prevHashes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "prev_hashes_sent_total", Help: "SetNewPrevHash messages sent to devices (a group message counts once)."}),
		setTargets: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "set_targets_sent_total", Help: "SetTarget messages sent (vardiff and UpdateChannel)."}),
		tipLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "new_tip_latency_seconds", Help: "From SetPrevHash to the SetNewPrevHash written to a device connection.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1}}),
		hashrate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "channel_hashrate", Help: "Estimated hash rate of a channel (hashes per second), from its accepted shares."},
			[]string{"conn", "channel", "user"}),
	}
	m.jobsStd = m.jobs.WithLabelValues("NewMiningJob")
	m.jobsExt = m.jobs.WithLabelValues("NewExtendedMiningJob")
	m.prefixes = m.jobs.WithLabelValues("SetExtranoncePrefix")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.channels, m.setupFailed, m.dropped, m.opened,
			m.openFailed, m.accepted, m.acceptedDiff, m.rejected, m.upstream, m.upstreamLost, m.blocks, m.jobs,
			m.prevHashes, m.setTargets, m.tipLatency, m.hashrate} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("devices: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
