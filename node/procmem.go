package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// anonResident reports the resident memory that no file backs (RssAnon in
// /proc/self/status: Go's heap, stacks and runtime). The rest of
// process_resident_memory_bytes is pages of files Badger maps (its tables
// and memtable logs), which the kernel drops when memory is short; under a
// long write load they are a third of the total (BENCHMARKS.md), so the
// total alone overstates what the node holds.
func anonResident() prometheus.Collector {
	return procMetric(readRssAnon, func(read func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_process_resident_anon_bytes",
			Help: "Resident memory not backed by a file (heap, stacks); the rest of process_resident_memory_bytes is Badger's mapped files, which the kernel reclaims under pressure."},
			read)
	})
}

// minorFaults counts the page faults the kernel served without reading
// the disk: mostly the first touch of fresh memory, which Badger's writes
// make all the time (each memtable's log and each table is a new mapped
// file, and its builders and memtables are new buffers). On a virtual
// machine each such fault can cost nearly as much as applying a small
// send (11-15 µs on the development machine, BENCHMARKS.md), so this says
// how much of a node's CPU the machine, rather than Herald, takes.
func minorFaults() prometheus.Collector {
	return procMetric(readMinorFaults, func(read func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_process_minor_page_faults_total",
			Help: "Page faults served without disk I/O (mostly fresh memory and Badger's new mapped files touched for the first time)."},
			read)
	})
}

// procMetric is a metric that reads /proc at each scrape; nil where the
// first read fails (no /proc, or not this field).
func procMetric(read func() (float64, bool), metric func(read func() float64) prometheus.Collector) prometheus.Collector {
	if _, ok := read(); !ok {
		return nil
	}
	return metric(func() float64 {
		v, _ := read()
		return v
	})
}

func readRssAnon() (float64, bool) {
	p, err := procfs.Self()
	if err != nil {
		return 0, false
	}
	st, err := p.NewStatus()
	if err != nil || st.RssAnon == 0 {
		return 0, false
	}
	return float64(st.RssAnon), true
}

func readMinorFaults() (float64, bool) {
	p, err := procfs.Self()
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, false
	}
	return float64(st.MinFlt), true
}
