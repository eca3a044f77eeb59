"""Who and what is in a building: resources, companies, users, attribution.

registry     resources (rooms, desks, amenities) and the sync status admins see
companies    the building's companies and their domains
people       registered users, and the building settings (which name the default user)
userimport   bulk import of users (CSV or JSON), all or nothing
attribution  the attribution rule: who a booker is (pure)
attributor   the rule bound to one building's stored users, companies and settings
"""
