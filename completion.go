package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks herald itself for the candidates: urfave/cli answers
// the hidden --generate-bash-completion flag with the subcommands of the
// words so far, or with the flags when the word being completed starts
// with "-". So the script never goes stale when commands change.
const bashCompletion = `# herald completion for bash: source <(herald completion bash)
_herald_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local IFS=$'\n'
  local words=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
  local candidates
  if [[ $cur == -* ]]; then
    candidates=$("${COMP_WORDS[0]}" "${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    candidates=$("${COMP_WORDS[0]}" "${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
}
complete -o default -F _herald_complete herald
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Description: "Load it in the current shell, or add the line to ~/.bashrc or ~/.zshrc:\n" +
			"  source <(herald completion bash)\n  source <(herald completion zsh)",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				// zsh runs bash completion functions through bashcompinit.
				_, err := fmt.Fprint(c.App.Writer, "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion)
				return err
			}
			return fmt.Errorf("completion: name the shell: herald completion bash, or herald completion zsh")
		},
	}
}
