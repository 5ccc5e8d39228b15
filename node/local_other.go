//go:build !unix

package node

// startLocalSocket: password resets through the data directory need a
// Unix socket whose directory's permissions keep other users out, which
// this system does not give; the node runs without it.
func (n *Node) startLocalSocket() {}
