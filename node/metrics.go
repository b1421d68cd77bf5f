package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/starlingsched/starling/internal/api"
)

// metrics are the node's Prometheus metrics, in a registry of its own so that several
// nodes can live in one process.
type metrics struct {
	reg        *prometheus.Registry
	submitted  prometheus.Counter
	rejected   prometheus.Counter
	finished   *prometheus.CounterVec
	retries    prometheus.Counter
	expired    prometheus.Counter
	runSeconds prometheus.Histogram
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starling_tasks_submitted_total", Help: "Tasks accepted by this node.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starling_submissions_rejected_total", Help: "Submissions refused because the queue was full.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starling_tasks_finished_total", Help: "Tasks owned by this node that reached a terminal state, by state.",
		}, []string{"state"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starling_task_retries_total", Help: "Failed attempts scheduled for a retry.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starling_records_expired_total", Help: "Finished records dropped by retention.",
		}),
		runSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "starling_task_run_seconds", Help: "How long handler runs took on this node.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12),
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	locked := func(f func() float64) func() float64 {
		return func() float64 { n.mu.Lock(); defer n.mu.Unlock(); return f() }
	}
	m.reg.MustRegister(
		m.submitted, m.rejected, m.finished, m.retries, m.expired, m.runSeconds,
		gauge("starling_tasks_queued", "Tasks in the ready queue.", locked(func() float64 { return float64(n.q.len) })),
		gauge("starling_tasks_live", "Tasks owned here that have not finished.", locked(func() float64 { return float64(n.live) })),
		gauge("starling_slots_busy", "Worker slots in use.", locked(func() float64 { return float64(n.busy) })),
		gauge("starling_slots", "Worker slots.", func() float64 { return float64(n.cfg.Slots) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if n.cluster != nil {
		counter := func(name, help string, f func() float64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, locked(f))
		}
		c := n.cluster
		m.reg.MustRegister(
			counter("starling_steal_requests_total", "Steal requests this node sent as a thief.",
				func() float64 { return float64(c.thief.Stats().Requests) }),
			counter("starling_stolen_tasks_total", "Tasks this node took from peers.",
				func() float64 { return float64(c.thief.Stats().Tasks) }),
			counter("starling_granted_tasks_total", "Tasks peers took from this node.",
				func() float64 { return float64(c.victim.Stats().Tasks) }),
			counter("starling_steal_empty_total", "Steal requests answered with nothing to take.",
				func() float64 { return float64(c.thief.Stats().Empties) }),
			gauge("starling_peers_alive", "Peers this node sees alive.", locked(func() float64 {
				k := 0
				for _, p := range c.peers {
					if !p.gone {
						k++
					}
				}
				return float64(k)
			})),
			gauge("starling_tasks_foreign", "Tasks of other nodes queued or running here.",
				locked(func() float64 { return float64(len(c.foreign)) })),
		)
	}
	for _, s := range api.States {
		if s.Terminal() {
			m.finished.WithLabelValues(string(s))
		}
	}
	return m
}
