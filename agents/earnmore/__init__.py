"""EarnMore: a maskable stock representation for customizable stock pools."""
