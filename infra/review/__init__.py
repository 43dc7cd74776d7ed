"""The review room: what a merge request shows its reviewers (the MR note) and the policy pack's
verdict on any plan document."""
