"""Who and what is in a building: resources, companies, users, attribution."""
