package cli

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// usersCmd makes and renders the bus's users for a deployment that does not
// embed its server (docs/security.md).
func usersCmd(environ []string, stdout io.Writer) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Make the NATS users (one per service, operator, analyst) and render them for a cluster",
		Long: `Every user of the bus has its own nkey. "init" makes the seeds that are missing in the
credentials directory (default $BROKERFLOW_NATS_CREDS_DIR, or creds/ in $BROKERFLOW_DATA_DIR);
"server-config" and "helm-values" print the servers' authorization (public keys and permissions);
"secrets" prints one Kubernetes Secret per user, holding its seed.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "credentials directory")
	resolve := func() string {
		if dir != "" {
			return dir
		}
		m := service.EnvMap(environ)
		if d := m["BROKERFLOW_NATS_CREDS_DIR"]; d != "" {
			return d
		}
		data := m["BROKERFLOW_DATA_DIR"]
		if data == "" {
			data = ".brokerflow/data"
		}
		return filepath.Join(data, "creds")
	}
	render := func(use, short string, f func(string) ([]byte, error)) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
			b, err := f(resolve())
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		}}
	}
	var namespace string
	secrets := render("secrets", "Print one Kubernetes Secret per user with its seed (apply it, never commit it)", func(d string) ([]byte, error) {
		return natsauth.Secrets(d, namespace)
	})
	secrets.Flags().StringVar(&namespace, "namespace", "brokerflow", "the Secrets' namespace")
	cmd.AddCommand(
		&cobra.Command{Use: "init", Short: "Make the seeds that are missing (mode 0600, in a 0700 directory)", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				d := resolve()
				if err := natsauth.Ensure(d); err != nil {
					return err
				}
				for _, user := range bus.Users() {
					pub, err := natsauth.PublicKey(d, user)
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "%-15s %s  %s\n", user, pub, natsauth.SeedFile(d, user))
				}
				return nil
			}},
		render("server-config", "Print the authorization block for nats-server's configuration", natsauth.ServerConfig),
		render("helm-values", "Print values for the official NATS Helm chart (config.merge.authorization)", natsauth.HelmValues),
		secrets,
	)
	return cmd
}
