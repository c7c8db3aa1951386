"""Loyalty: the programme, members, the points ledger, sign-in, rewards, coupons and lotteries."""
