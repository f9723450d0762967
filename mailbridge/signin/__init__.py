"""Who may use the browser console and how they prove it: roles read from the directory,
emailed one-time sign-in links, single sign-on by OpenID Connect, and sessions. No password
is ever stored; tokens are kept only as hashes."""
