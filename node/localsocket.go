package node

import "path/filepath"

// LocalSocket is where, below the data directory, a node takes password
// resets from an operator on its machine, who signs in with nothing but
// access to the directory (httpapi.LocalHandler; `herald users
// reset-password`). Its directory is the process user's alone (mode 0700).
var LocalSocket = filepath.Join("local", "admin.sock")
