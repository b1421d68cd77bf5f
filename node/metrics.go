package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
)

// metrics are the node's Prometheus metrics, in a registry of its own so that several
// nodes can live in one process. Counts come from the engine's stats as the event
// loop last published them.
type metrics struct {
	reg        *prometheus.Registry
	runSeconds prometheus.Histogram
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "starling_task_run_seconds", Help: "How long handler runs took on this node.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12),
		}),
	}
	stat := func(f func(s *engine.Stats) float64) func() float64 {
		return func() float64 {
			n.view.mu.RLock()
			defer n.view.mu.RUnlock()
			return f(&n.view.stats)
		}
	}
	gauge := func(name, help string, f func(s *engine.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, stat(f))
	}
	counter := func(name, help string, f func(s *engine.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, stat(f))
	}
	m.reg.MustRegister(
		m.runSeconds,
		counter("starling_tasks_submitted_total", "Tasks accepted by this node.",
			func(s *engine.Stats) float64 { return float64(s.Counters.Submitted) }),
		counter("starling_submissions_rejected_total", "Submissions refused because the queue was full.",
			func(s *engine.Stats) float64 { return float64(s.Counters.Rejected) }),
		counter("starling_task_retries_total", "Failed attempts scheduled for a retry.",
			func(s *engine.Stats) float64 { return float64(s.Counters.Retries) }),
		counter("starling_records_expired_total", "Finished records dropped by retention.",
			func(s *engine.Stats) float64 { return float64(s.Counters.Expired) }),
		gauge("starling_tasks_queued", "Tasks in the ready queue.", func(s *engine.Stats) float64 { return float64(s.Queued) }),
		gauge("starling_tasks_live", "Tasks owned here that have not finished.", func(s *engine.Stats) float64 { return float64(s.Live) }),
		gauge("starling_slots_busy", "Worker slots in use.", func(s *engine.Stats) float64 { return float64(s.Busy) }),
		gauge("starling_slots", "Worker slots.", func(s *engine.Stats) float64 { return float64(s.Slots) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, st := range api.States {
		if !st.Terminal() {
			continue
		}
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "starling_tasks_finished_total", Help: "Tasks owned by this node that reached a terminal state, by state.",
			ConstLabels: prometheus.Labels{"state": string(st)},
		}, stat(func(s *engine.Stats) float64 { return float64(s.Counters.Finished.Of(st)) })))
	}
	if n.cluster != nil {
		m.reg.MustRegister(
			counter("starling_steal_requests_total", "Steal requests this node sent as a thief.",
				func(s *engine.Stats) float64 { return float64(s.Thief.Requests) }),
			counter("starling_stolen_tasks_total", "Tasks this node took from peers.",
				func(s *engine.Stats) float64 { return float64(s.Thief.Tasks) }),
			counter("starling_granted_tasks_total", "Tasks peers took from this node.",
				func(s *engine.Stats) float64 { return float64(s.Victim.Tasks) }),
			counter("starling_steal_empty_total", "Steal requests answered with nothing to take.",
				func(s *engine.Stats) float64 { return float64(s.Thief.Empties) }),
			gauge("starling_peers_alive", "Peers this node sees alive.", func(s *engine.Stats) float64 { return float64(s.PeersAlive) }),
			gauge("starling_tasks_foreign", "Tasks of other nodes queued or running here.",
				func(s *engine.Stats) float64 { return float64(s.Foreign) }),
		)
	}
	return m
}
