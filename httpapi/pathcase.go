package httpapi

import (
	"net/url"
	"strings"
)

// segmentFold respells the fixed segments of an API path ("V1.0", "Me",
// "NotificationSubscriptions") as the routes spell them, because Microsoft
// Graph matches them without regard to case and code ported from it keeps
// its authors' spelling. It is a tree of the routes' segments: a request's
// path walks it, so only a segment in the place of a fixed name is
// respelled, and one in the place of an id or a name ({id}) is left as
// sent. Paths outside /v1.0 and /beta do not enter it.
type segmentFold struct {
	lits  []string // fixed names, as the routes spell them
	next  []*segmentFold
	param *segmentFold // the {wildcard} in this place, if any
}

func newSegmentFold() *segmentFold { return &segmentFold{} }

// add enters a route's path pattern ("/v1.0/users/{id}/sessions").
func (f *segmentFold) add(pattern string) {
	node := f
	for _, seg := range strings.Split(strings.TrimPrefix(pattern, "/"), "/") {
		if strings.HasPrefix(seg, "{") {
			if node.param == nil {
				node.param = &segmentFold{}
			}
			node = node.param
			continue
		}
		i := node.find(seg, false)
		if i < 0 {
			for _, l := range node.lits {
				if strings.EqualFold(l, seg) {
					// Two routes that differ in case alone would make a
					// respelling ambiguous.
					panic("httpapi: routes " + l + " and " + seg + " differ only in case")
				}
			}
			node.lits = append(node.lits, seg)
			node.next = append(node.next, &segmentFold{})
			i = len(node.lits) - 1
		}
		node = node.next[i]
	}
}

// find returns the index of seg among the fixed names, exactly or, with
// fold, without regard to case; -1 if it is none of them.
func (f *segmentFold) find(seg string, fold bool) int {
	for i, l := range f.lits {
		if l == seg || fold && strings.EqualFold(l, seg) {
			return i
		}
	}
	return -1
}

// respell returns p with its fixed segments spelled as the routes spell
// them, and whether it changed anything. p is a URL's Path, or with escaped
// its RawPath, whose segments are compared unescaped and kept escaped. A
// segment that is a fixed name in another case wins over a {wildcard} in
// the same place (notifications/Delta is the delta, not a notification of
// id "Delta"): no id Herald makes is spelled like one of its names. The
// walk stops where no route goes on; the path is a 404 then, as it was.
func (f *segmentFold) respell(p string, escaped bool) (string, bool) {
	var b strings.Builder
	node, done := f, 0 // done: p[:done] is in b, or unchanged when b is empty
	for i := 1; i <= len(p) && node != nil; {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			j = len(p)
		} else {
			j += i
		}
		seg := p[i:j]
		if escaped && strings.IndexByte(seg, '%') >= 0 {
			if u, err := url.PathUnescape(seg); err == nil {
				seg = u
			}
		}
		k := node.find(seg, false)
		if k < 0 {
			if k = node.find(seg, true); k >= 0 {
				if b.Len() == 0 {
					b.Grow(len(p))
				}
				b.WriteString(p[done:i])
				b.WriteString(node.lits[k])
				done = j
			}
		}
		switch {
		case k >= 0:
			node = node.next[k]
		default:
			node = node.param
		}
		i = j + 1
	}
	if b.Len() == 0 {
		return p, false
	}
	b.WriteString(p[done:])
	return b.String(), true
}
