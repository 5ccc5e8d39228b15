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
// total alone overstates what the node holds. Nil where /proc has no
// RssAnon.
func anonResident() prometheus.Collector {
	if _, ok := readRssAnon(); !ok {
		return nil
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_process_resident_anon_bytes",
		Help: "Resident memory not backed by a file (heap, stacks); the rest of process_resident_memory_bytes is Badger's mapped files, which the kernel reclaims under pressure."},
		func() float64 {
			v, _ := readRssAnon()
			return float64(v)
		})
}

func readRssAnon() (uint64, bool) {
	p, err := procfs.Self()
	if err != nil {
		return 0, false
	}
	st, err := p.NewStatus()
	if err != nil || st.RssAnon == 0 {
		return 0, false
	}
	return st.RssAnon, true
}

// minorFaults counts the page faults the kernel served without reading
// the disk: mostly the first touch of fresh memory, which Badger's writes
// make all the time (each memtable's log and each table is a new mapped
// file, and its builders and memtables are new buffers). On a virtual
// machine each such fault can cost more than a small send's whole apply
// (11-15 µs on the development machine, BENCHMARKS.md), so this says how
// much of a node's CPU the machine, rather than Herald, takes. Nil where
// /proc has no stat.
func minorFaults() prometheus.Collector {
	if _, ok := readMinorFaults(); !ok {
		return nil
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_process_minor_page_faults_total",
		Help: "Page faults served without disk I/O (mostly fresh memory and Badger's new mapped files touched for the first time)."},
		func() float64 {
			v, _ := readMinorFaults()
			return float64(v)
		})
}

func readMinorFaults() (uint, bool) {
	p, err := procfs.Self()
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, false
	}
	return st.MinFlt, true
}
