//go:build !race

package fanout

const allocSlack = 1
