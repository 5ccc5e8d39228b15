package node

import (
	"github.com/herald-notify/herald/fanout"
)

// senders builds the delivery channels the config enables.
func (n *Node) senders() map[string]fanout.Sender {
	return map[string]fanout.Sender{}
}
