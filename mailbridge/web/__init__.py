"""The browser console (`mailbridge web`): routes and pages only. Every rule a page applies
lives in cases/, console/, deadlines/, pipeline/ or signin/, and is the one the command line
and the email door use."""
