package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version is set by a release build with -ldflags "-X main.version=v1.2.3";
// without it the version comes from the build info that the go command
// records (the module version, which go build derives from the git tag or
// commit, and the VCS revision).
var version = ""

// buildVersion is what "herald version" prints: the version on the first
// line, then the commit, its time and the Go release, so that a bug report
// names exactly what was running.
type buildVersion struct {
	Version   string
	Revision  string
	Time      string
	Modified  bool
	GoVersion string
}

func readBuildVersion() buildVersion {
	info, ok := debug.ReadBuildInfo()
	return fromBuildInfo(version, info, ok)
}

// fromBuildInfo prefers stamped, the -ldflags version, to the module
// version the go command recorded.
func fromBuildInfo(stamped string, info *debug.BuildInfo, ok bool) buildVersion {
	v := buildVersion{Version: stamped}
	if !ok {
		if v.Version == "" {
			v.Version = "unknown"
		}
		return v
	}
	v.GoVersion = info.GoVersion
	if v.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if v.Version == "" {
		// go run and go test record no module version.
		v.Version = "devel"
	}
	return v
}

// Short is the one-line form that --version and the startup log show.
func (v buildVersion) Short() string {
	var extra []string
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if v.Modified {
			rev += "-modified"
		}
		extra = append(extra, rev)
	}
	if v.GoVersion != "" {
		extra = append(extra, v.GoVersion)
	}
	if len(extra) == 0 {
		return v.Version
	}
	return v.Version + " (" + strings.Join(extra, ", ") + ")"
}

// Long is the output of "herald version".
func (v buildVersion) Long() string {
	var b strings.Builder
	fmt.Fprintf(&b, "herald %s\n", v.Version)
	if v.Revision != "" {
		fmt.Fprintf(&b, "commit: %s", v.Revision)
		if v.Modified {
			b.WriteString(" (with uncommitted changes)")
		}
		b.WriteString("\n")
	}
	if v.Time != "" {
		fmt.Fprintf(&b, "commit time: %s\n", v.Time)
	}
	if v.GoVersion != "" {
		fmt.Fprintf(&b, "go: %s\n", v.GoVersion)
	}
	return b.String()
}
