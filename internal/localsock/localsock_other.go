//go:build !unix

package localsock

import (
	"errors"
	"net"
)

var errNoSockets = errors.New("password resets through the data directory need a Unix system")

func CheckPath(dir string, owner int, strict bool) (string, error) { return "", errNoSockets }

func Owner(path string) (int, error) { return 0, errNoSockets }

func Private(dir string, owner int) error { return errNoSockets }

func Trusted(c net.Conn, uid int) error { return errNoSockets }
