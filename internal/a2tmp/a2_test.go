package a2
import ("testing";"time";"github.com/herald-notify/herald/credential";"github.com/herald-notify/herald/internal/testnode")
func TestA(t *testing.T){ s:=time.Now(); h:=credential.HashPassword("abcdefgh"); credential.CheckPassword(h,"x"); t.Log(time.Since(s)); s=time.Now(); testnode.Start(t,nil); t.Log("node", time.Since(s)) }
