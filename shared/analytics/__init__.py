"""Room analytics (issue 15): compute (pure: blocks + attendance -> daily rollups), report (pure:
rollups -> the answer, JSON and CSV), store (the rollups table and each building's watermark),
service (the rollup timer, rebuild, the query). docs/ANALYTICS.md defines every number."""
