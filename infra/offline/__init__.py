"""The offline room: the program on Pulumi's mock engine (`shipyard plan`), the plan document it
prints, and the comparison of two plan documents (`shipyard plan diff`). No credentials, no network."""
