// Seed 001's NotificationService, verbatim: tickethub must work with it unchanged.

class NotificationService {
  constructor(apiUrl, wsUrl, accessToken) {
    this.apiUrl = apiUrl;
    this.wsUrl = wsUrl;
    this.accessToken = accessToken;
    this.ws = null;
    this.listeners = [];
  }

  // Connect to WebSocket
  connect() {
    this.ws = new WebSocket(`${this.wsUrl}?token=${this.accessToken}`);
    
    this.ws.onopen = () => {
      console.log('‚úÖ Notification service connected');
      this.startHeartbeat();
    };
    
    this.ws.onmessage = (event) => {
      const data = JSON.parse(event.data);
      
      if (data.type === 'connection_established') {
        console.log('User ID:', data.user_id);
      } else if (data.notification_type) {
        // Real-time notification received
        this.notifyListeners(data);
        this.showNotification(data);
      }
    };
    
    this.ws.onclose = () => {
      console.log('‚ùå Notification service disconnected');
      // Reconnect after 5 seconds
      setTimeout(() => this.connect(), 5000);
    };
  }

  // Keep connection alive
  startHeartbeat() {
    setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({
          type: 'ping',
          timestamp: Date.now()
        }));
      }
    }, 30000); // Every 30 seconds
  }

  // Subscribe to notifications
  subscribe(callback) {
    this.listeners.push(callback);
  }

  // Notify all listeners
  notifyListeners(notification) {
    this.listeners.forEach(callback => callback(notification));
  }

  // Show browser notification
  showNotification(data) {
    if ('Notification' in window && Notification.permission === 'granted') {
      new Notification(data.message, {
        body: data.ticket?.title,
        icon: '/notification-icon.png',
        tag: `ticket-${data.ticket?.id}`
      });
    }
  }

  // Fetch all notifications
  async getNotifications(filters = {}) {
    const params = new URLSearchParams(filters);
    const response = await fetch(`${this.apiUrl}/notifications/?${params}`, {
      headers: { 'Authorization': `Bearer ${this.accessToken}` }
    });
    return response.json();
  }

  // Get unread count
  async getUnreadCount() {
    const response = await fetch(`${this.apiUrl}/notifications/unread_count/`, {
      headers: { 'Authorization': `Bearer ${this.accessToken}` }
    });
    return response.json();
  }

  // Mark as read
  async markAsRead(notificationId) {
    const response = await fetch(`${this.apiUrl}/notifications/${notificationId}/mark_as_read/`, {
      method: 'POST',
      headers: { 'Authorization': `Bearer ${this.accessToken}` }
    });
    return response.json();
  }

  // Mark all as read
  async markAllAsRead() {
    const response = await fetch(`${this.apiUrl}/notifications/mark_all_as_read/`, {
      method: 'POST',
      headers: { 'Authorization': `Bearer ${this.accessToken}` }
    });
    return response.json();
  }
}
