//go:build !race

package httpapi

const allocSlack = 1
