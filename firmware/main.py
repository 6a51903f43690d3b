# Build the application from the stored configuration and run it forever.
from chargeguard import app

app.main()
