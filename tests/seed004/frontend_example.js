// Connect to WebSocket
const token = "your-jwt-token";
const ws = new WebSocket(`ws://localhost:8000/ws/notifications/?token=${token}`);

// Handle connection
ws.onopen = () => {
  console.log("Connected to notification service");
};

// Handle incoming messages
ws.onmessage = (event) => {
  const data = JSON.parse(event.data);
  
  if (data.type === 'connection_established') {
    console.log("Connection established:", data.message);
  } else if (data.type === 'new_notification') {
    console.log("New notification received:", data.notification);
    // Display notification to user
    showNotification(data.notification);
  } else if (data.type === 'notification_updated') {
    console.log("Notification updated:", data);
    // Update notification UI
  }
};

// Send ping to keep connection alive
setInterval(() => {
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: 'ping' }));
  }
}, 30000); // Every 30 seconds
