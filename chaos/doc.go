// Package chaos proves Herald's promise that an acknowledged notification is
// never lost, never duplicated and reaches every device, whatever single
// fault happens. Its test starts three real herald processes on loopback
// with a fault proxy (internal/faultproxy) on every directed link between
// them, runs clients, live-stream subscribers and a webhook receiver against
// them while a seeded scheduler injects faults, records the whole history,
// and checks it once the cluster has healed: see docs/faults.md.
//
// The files: cluster_test.go controls the processes and the proxies,
// workload_test.go drives the load, history_test.go records it,
// faults_test.go schedules the faults, check_test.go and
// linearizable_test.go check the history, chaos_test.go ties them together
// and prints the table.
package chaos
