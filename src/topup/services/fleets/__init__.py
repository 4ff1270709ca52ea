"""Enterprise fleets: organisations and their members (``organisations``), bulk renewals
(``bulk``) and monthly consolidated invoices (``invoices``).

Every use case that a member calls takes the member's account id and the organisation's id from
the request; whoever is not a member of that organisation is told it does not exist (a forged
id reveals nothing), and only owners and admins change anything."""
